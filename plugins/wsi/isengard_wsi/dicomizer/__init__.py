"""The WSI DICOMizer (``isengard-wsi-dicomizer``): slides to VL Whole Slide Microscopy series, as
OrthancWSIDicomizer makes them, copying JPEG tiles into frames without decoding them wherever it can.

sources.py reads slides, levels.py plans the target pyramid and makes its frames, dataset.py writes the headers,
writer.py the files and where they go, options.py and cli.py the command line.
"""
