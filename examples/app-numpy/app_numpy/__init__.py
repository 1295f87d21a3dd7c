"""app-numpy: federated logistic regression on the digits, written with the Message API."""
