"""The bottom layer: infrastructure every other layer shares, with no torch at import time.

``outputs`` (output-path checks, the ``.trimbert.json`` marker, atomic output folders), ``io``
(atomic file writes, JSON lines, the conditions a measurement ran on) and ``rank`` (which process of
a distributed job writes). It imports only :mod:`trimbert.errors`."""
