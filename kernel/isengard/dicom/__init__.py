"""DICOM knowledge of the kernel: reading headers, Orthanc's JSON forms, creating and rendering instances."""
