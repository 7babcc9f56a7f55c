"""A synthetic cell simulator: geometry of structures, optics of fluorescence and transmitted light,
and a writer producing OME-TIFF files plus a manifest in the layout real data uses."""
