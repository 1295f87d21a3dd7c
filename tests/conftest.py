"""Shared test configuration.

Hypothesis: modest example counts, no deadline (the test machine is shared and its
timings vary), and no example database written into the source tree.
"""

from hypothesis import settings

settings.register_profile("stamen", max_examples=50, deadline=None, database=None)
settings.load_profile("stamen")
