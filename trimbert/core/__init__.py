"""The bottom layer: infrastructure every other layer shares.

``settings`` (the pydantic ``Settings`` base every option group and recipe table is declared with),
``outputs`` (output-path checks, the ``.trimbert.json`` marker, atomic output folders; no torch),
``io`` (atomic file writes, JSON lines, the conditions a measurement ran on; torch only when
``conditions`` is called) and ``rank`` (which process of a distributed job writes). It imports only
:mod:`trimbert.errors`."""
