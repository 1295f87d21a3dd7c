"""app-pytorch: a PyTorch MLP on the digits, written with the Message API."""
