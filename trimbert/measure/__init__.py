"""The measure layer: size and FLOPs (``size``), timing side by side (``benchmark``), the ``bench``
command's library function (``bench``: models loaded, timed alternately, compared with a baseline)
and the per-block description of a model (``describe``)."""
