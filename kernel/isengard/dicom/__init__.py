"""DICOM knowledge of the kernel: reading headers, Orthanc's JSON forms, the network services, images.

Files are stored as received: pydicom is told not to validate values (which would only flood the log with
warnings about other vendors' liberties), so parsing and re-encoding never change or refuse a value.
"""

from pydicom import config as _pydicom_config

_pydicom_config.settings.reading_validation_mode = _pydicom_config.IGNORE
_pydicom_config.settings.writing_validation_mode = _pydicom_config.IGNORE
