from isengard.testing import sample


def test_upload_and_browse(isengard):
    server = isengard()
    [result] = server.upload(sample("Phenix", "IM-0001-0001.dcm"))
    assert result["Status"] == "Success"
    patient = server.get(f"/patients/{result['ParentPatient']}").json()
    assert patient["MainDicomTags"]["PatientName"] == "PHENIX"
