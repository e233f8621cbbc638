"""The behaviour every index backend must have, as tests that a backend's own test module inherits.

The SQLite and PostgreSQL plugins run the same class; a third-party index plugin can too::

    class TestMyIndexContract(IndexContract):
        @pytest.fixture
        async def index(self, tmp_path):
            idx = MyIndex(...)
            await idx.start()
            yield idx
            await idx.stop()

        async def table_counts(self, index):
            return {...}  # rows per table: resources, main_tags, metadata, attachments, labels

Covered: storing and the hierarchy, "AlreadyStored" and overwrite, cascading deletes up and down, the change log
(paging, Last after clearing, what deletions forget), metadata and attachment revisions, find and its OrderBy
keys, statistics, recycling order and protection, and concurrent writes of which one fails.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib

import pytest

from .backends import IndexBackend, RevisionMismatch
from .model import ChangeType, CompressionType, DicomIdentifiers, FileInfo, InstanceRecord, MetadataType, ResourceType
from .query import ConstraintKind, FindQuery, OrderKey, TagConstraint

PAT, STU, SER, INS = ResourceType.PATIENT, ResourceType.STUDY, ResourceType.SERIES, ResourceType.INSTANCE
TABLES = ("resources", "main_tags", "metadata", "attachments", "labels")


def record(
    patient: str = "PAT1", study: str = "1.2.1", series: str = "1.2.1.1", sop: str = "1.2.1.1.1", size: int = 100
) -> InstanceRecord:
    ids = DicomIdentifiers(patient, study, series, sop)
    return InstanceRecord(
        identifiers=ids,
        main_tags={
            PAT: {"PatientID": patient, "PatientName": f"Doe^{patient}"},
            STU: {
                "StudyInstanceUID": study,
                "StudyDate": "20240131",
                "StudyDescription": "Brain",
                "PatientName": "Doe",
            },
            SER: {"SeriesInstanceUID": series, "Modality": "MR"},
            INS: {"SOPInstanceUID": sop, "InstanceNumber": sop.rsplit(".", 1)[-1]},
        },
        metadata={
            INS: {int(MetadataType.ORIGIN): "Test"},
            SER: {int(MetadataType.REMOTE_AET): "FIRST"},
        },
        attachments=[file_info(1, size)],
    )


def file_info(kind: int, size: int) -> FileInfo:
    """As the kernel records an uncompressed file: the stored size and MD5 are the plain ones."""
    md5 = f"{size:032x}"
    return FileInfo(str(uuidlib.uuid4()), kind, size, md5, CompressionType.NONE, size, md5)


def public(rec: InstanceRecord, level: ResourceType) -> str:
    return rec.identifiers.public_id(level)


class IndexContract:
    """Inherit, and provide the ``index`` fixture (a started, empty backend) and :meth:`table_counts`."""

    async def table_counts(self, index: IndexBackend) -> dict[str, int]:
        """Rows in each of TABLES, read directly from the backend's database."""
        raise NotImplementedError

    async def test_is_an_index_backend(self, index: IndexBackend) -> None:
        assert isinstance(index, IndexBackend)

    async def test_store_creates_hierarchy_and_changes(self, index: IndexBackend) -> None:
        rec = record()
        outcome = await index.store_instance(rec, overwrite=False)
        assert outcome.status == "Success" and outcome.replaced == []
        assert [(c.change_type, c.level) for c in outcome.changes] == [
            (ChangeType.NEW_INSTANCE, INS),
            (ChangeType.NEW_SERIES, SER),
            (ChangeType.NEW_STUDY, STU),
            (ChangeType.NEW_PATIENT, PAT),
        ]
        for level in ResourceType:
            assert await index.lookup(public(rec, level)) is level
        [instance] = await index.get_resources(INS, [public(rec, INS)])
        assert instance.parent == public(rec, SER) and instance.attachment == rec.attachments[0]
        assert instance.metadata[MetadataType.ORIGIN] == "Test"
        [study] = await index.get_resources(STU, [public(rec, STU)])
        assert study.main_tags["PatientName"] == "Doe" and study.children == [public(rec, SER)]
        [series] = await index.get_resources(SER, [public(rec, SER)])
        assert series.metadata[MetadataType.REMOTE_AET] == "FIRST"

        second = record(sop="1.2.1.1.2")
        outcome = await index.store_instance(second, overwrite=False)
        assert [c.change_type for c in outcome.changes] == [ChangeType.NEW_INSTANCE]
        assert await index.instances_of(PAT, public(rec, PAT)) == [public(rec, INS), public(second, INS)]

    async def test_already_stored_changes_nothing(self, index: IndexBackend) -> None:
        rec = record()
        await index.store_instance(rec, overwrite=False)
        before = await self.table_counts(index)
        again = record()  # same identifiers, another file
        outcome = await index.store_instance(again, overwrite=False)
        assert outcome.status == "AlreadyStored" and outcome.changes == [] and outcome.replaced == []
        assert await self.table_counts(index) == before
        assert await index.all_attachment_uuids() == {rec.attachments[0].uuid}
        last = await index.last_change()
        assert last is not None and last.seq == 4

    async def test_overwrite_replaces_the_attachment(self, index: IndexBackend) -> None:
        rec = record()
        await index.store_instance(rec, overwrite=True)
        before = await self.table_counts(index)
        newer = record(size=200)
        newer.main_tags[INS]["InstanceNumber"] = "42"
        outcome = await index.store_instance(newer, overwrite=True)
        assert outcome.status == "Success"
        assert outcome.replaced == [rec.attachments[0]], "the old file must be handed back for removal"
        assert await index.all_attachment_uuids() == {newer.attachments[0].uuid}
        [instance] = await index.get_resources(INS, [public(rec, INS)])
        assert instance.main_tags["InstanceNumber"] == "42" and instance.attachment == newer.attachments[0]
        assert await self.table_counts(index) == before
        stats = await index.statistics()
        assert (stats.count_instances, stats.disk_size) == (1, 200)

    async def test_delete_cascades_down_and_up(self, index: IndexBackend) -> None:
        a = record(sop="1.2.1.1.1")
        b = record(sop="1.2.1.1.2")
        other_series = record(series="1.2.1.2", sop="1.2.1.2.1")
        for rec in (a, b, other_series):
            await index.store_instance(rec, overwrite=False)
        await index.set_label(SER, public(a, SER), "keep", True)

        # an instance with a sibling: only it goes
        outcome = await index.delete_resource(INS, public(a, INS))
        assert outcome is not None
        assert outcome.files == [a.attachments[0]] and outcome.remaining_ancestor == (SER, public(a, SER))
        assert [(c.change_type, c.level) for c in outcome.changes] == [(ChangeType.DELETED, INS)]

        # the last instance of a series: the series goes too, the study remains
        outcome = await index.delete_resource(INS, public(b, INS))
        assert outcome is not None and outcome.remaining_ancestor == (STU, public(a, STU))
        assert {c.public_id for c in outcome.changes} == {public(b, INS), public(b, SER)}
        assert await index.lookup(public(b, SER)) is None
        assert await index.all_labels() == []

        # the patient: everything below, with every file handed back
        outcome = await index.delete_resource(PAT, public(a, PAT))
        assert (
            outcome is not None
            and outcome.files == [other_series.attachments[0]]
            and outcome.remaining_ancestor is None
        )
        assert {c.level for c in outcome.changes} == set(ResourceType)
        assert await self.table_counts(index) == dict.fromkeys(TABLES, 0)
        assert await index.delete_resource(PAT, public(a, PAT)) is None
        assert await index.delete_resource(STU, public(a, PAT)) is None  # a patient id is no study

    async def test_change_log_paging(self, index: IndexBackend) -> None:
        for i in range(5):
            await index.store_instance(
                record(patient=f"P{i}", study=f"1.{i}", series=f"1.{i}.1", sop=f"1.{i}.1.1"), overwrite=False
            )
        changes, done, last = await index.get_changes(0, 7)
        assert [c.seq for c in changes] == list(range(1, 8)) and not done and last == 20
        changes, done, last = await index.get_changes(7, 100)
        assert [c.seq for c in changes] == list(range(8, 21)) and done
        assert (await index.get_changes(20, 10))[0] == []
        await index.clear_changes()
        assert (await index.get_changes(0, 10))[0] == [] and await index.last_change() is None
        # sequence numbers are never reused, as in Orthanc
        logged = await index.log_change(ChangeType.STABLE_STUDY, STU, "x")
        assert logged.seq == 21

    async def test_metadata_revisions(self, index: IndexBackend) -> None:
        rec = record()
        await index.store_instance(rec, overwrite=False)
        iid, user = public(rec, INS), 1024
        revision, change = await index.set_metadata(INS, iid, user, "one", expected_revision=None)
        assert revision == 0 and change.change_type is ChangeType.UPDATED_METADATA
        assert (await index.set_metadata(INS, iid, user, "two", expected_revision=0))[0] == 1
        with pytest.raises(RevisionMismatch):
            await index.set_metadata(INS, iid, user, "stale", expected_revision=0)
        assert (await index.get_metadata(INS, iid))[user] == ("two", 1)
        with pytest.raises(RevisionMismatch):
            await index.delete_metadata(INS, iid, user, expected_revision=0)
        assert await index.delete_metadata(INS, iid, user, expected_revision=1) is True
        assert await index.delete_metadata(INS, iid, user, expected_revision=None) is False
        assert user not in await index.get_metadata(INS, iid)
        with pytest.raises(KeyError):
            await index.set_metadata(INS, "no-such-instance", user, "x", expected_revision=None)
        with pytest.raises(KeyError):
            await index.get_metadata(STU, iid)  # right id, wrong level

    async def test_attachment_revisions(self, index: IndexBackend) -> None:
        rec = record()
        await index.store_instance(rec, overwrite=False)
        iid = public(rec, INS)
        first = file_info(1025, 10)
        old, _ = await index.set_attachment(INS, iid, first, expected_revision=None)
        assert old is None
        second = file_info(1025, 20)
        with pytest.raises(RevisionMismatch):
            await index.set_attachment(INS, iid, second, expected_revision=5)
        old, _ = await index.set_attachment(INS, iid, second, expected_revision=0)
        assert old == first
        assert (await index.get_attachments(INS, iid))[1025].revision == 1
        assert await index.all_attachment_uuids() == {rec.attachments[0].uuid, second.uuid}
        removed = await index.delete_attachment(INS, iid, 1025, expected_revision=1)
        assert removed is not None and removed.uuid == second.uuid

    async def test_find(self, index: IndexBackend) -> None:
        smith = record(patient="S1", study="2.1", series="2.1.1", sop="2.1.1.1")
        smith.main_tags[PAT]["PatientName"] = "Smith^John"
        muller = record(patient="M1", study="3.1", series="3.1.1", sop="3.1.1.1")
        muller.main_tags[PAT]["PatientName"] = "müller^anna"
        muller.main_tags[STU]["StudyDate"] = "20200101"
        for rec in (smith, muller):
            await index.store_instance(rec, overwrite=False)

        def query(level: ResourceType, *constraints: TagConstraint) -> FindQuery:
            return FindQuery(level=level, constraints=list(constraints))

        def name(text: str, sensitive: bool = True) -> TagConstraint:
            found = TagConstraint.parse("PatientName", PAT, text, vr="PN", case_sensitive=sensitive)
            assert found is not None
            return found

        assert await index.find(query(PAT, name("Smith^John"))) == [public(smith, PAT)]
        assert await index.find(query(PAT, name("smith*"))) == []
        assert await index.find(query(PAT, name("smith*", False))) == [public(smith, PAT)]
        assert await index.find(query(PAT, name("MÜLLER*", False))) == [public(muller, PAT)]
        dates = TagConstraint("StudyDate", STU, ConstraintKind.RANGE, ("20230101", ""))
        assert await index.find(query(STU, dates)) == [public(smith, STU)]
        # an ancestor's tag constrains a lower level
        assert await index.find(query(INS, name("müller^anna"))) == [public(muller, INS)]
        modality = TagConstraint("Modality", SER, ConstraintKind.LIST, ("CT", "MR"))
        both = {public(smith, SER), public(muller, SER)}
        assert set(await index.find(query(SER, modality))) == both
        first = await index.find(FindQuery(level=SER, constraints=[modality], limit=1))
        rest = await index.find(FindQuery(level=SER, constraints=[modality], since=1, limit=5))
        assert len(first) == len(rest) == 1 and set(first + rest) == both

    async def test_find_order_by(self, index: IndexBackend) -> None:
        # series numbers 10, 9, "x" (no number), none; patient names in code-point order, one missing
        recs = []
        for i, (number, patient_name) in enumerate((("10", "b^B"), ("9", "B^b"), ("x", "a"), (None, None))):
            rec = record(patient=f"O{i}", study=f"4.{i}", series=f"4.{i}.1", sop=f"4.{i}.1.1")
            if number is None:
                del rec.main_tags[SER]["Modality"]
            else:
                rec.main_tags[SER]["SeriesNumber"] = number
            if patient_name is None:
                del rec.main_tags[PAT]["PatientName"]
            else:
                rec.main_tags[PAT]["PatientName"] = patient_name
            rec.metadata[SER] = {int(MetadataType.REMOTE_AET): f"AET{3 - i}"}
            recs.append(rec)
            await index.store_instance(rec, overwrite=False)

        async def ordered(*keys: OrderKey, limit: int | None = None, since: int = 0) -> list[int]:
            found = await index.find(FindQuery(level=SER, order_by=keys, limit=limit, since=since))
            return [[public(r, SER) for r in recs].index(f) for f in found]

        by_number = OrderKey(SER, tag="SeriesNumber", numeric=True)
        assert await ordered(by_number) == [3, 2, 1, 0]  # missing first, "x" counts as 0, then 9 before 10
        assert await ordered(OrderKey(SER, tag="SeriesNumber", numeric=True, descending=True)) == [0, 1, 2, 3]
        assert await ordered(OrderKey(SER, tag="SeriesNumber")) == [3, 0, 1, 2]  # as text: "10" < "9" < "x"
        # a tag of an ancestor (the patient), in code points: "B^b" < "a" < "b^B"
        assert await ordered(OrderKey(PAT, tag="PatientName")) == [3, 1, 2, 0]
        assert await ordered(OrderKey(SER, metadata=int(MetadataType.REMOTE_AET))) == [3, 2, 1, 0]
        # paging follows the order
        assert await ordered(by_number, limit=2, since=1) == [2, 1]

    async def test_statistics(self, index: IndexBackend) -> None:
        assert (await index.statistics()).count_instances == 0
        a = record(sop="1.2.1.1.1", size=100)
        b = record(series="1.2.1.2", sop="1.2.1.2.1", size=250)
        c = record(patient="OTHER", study="9.1", series="9.1.1", sop="9.1.1.1", size=1000)
        for rec in (a, b, c):
            await index.store_instance(rec, overwrite=False)
        whole = await index.statistics()
        assert (whole.count_patients, whole.count_studies, whole.count_series, whole.count_instances) == (2, 2, 3, 3)
        assert whole.disk_size == whole.uncompressed_size == whole.dicom_disk_size == 1350
        study = await index.statistics(STU, public(a, STU))
        assert (study.count_studies, study.count_series, study.count_instances, study.disk_size) == (1, 2, 2, 350)
        series = await index.statistics(SER, public(b, SER))
        assert (series.count_instances, series.disk_size) == (1, 250)

    async def test_recycling_order_and_protection(self, index: IndexBackend) -> None:
        first, second = record(patient="A"), record(patient="B", study="5", series="5.1", sop="5.1.1")
        await index.store_instance(first, overwrite=False)
        await index.store_instance(second, overwrite=False)
        assert await index.recycling_candidate() == public(first, PAT)
        assert await index.recycling_candidate(avoid=public(first, PAT)) == public(second, PAT)
        await index.store_instance(record(patient="A", sop="1.2.1.1.9"), overwrite=False)  # A is fed again
        assert await index.recycling_candidate() == public(second, PAT)
        await index.set_protected(public(second, PAT), True)
        assert await index.recycling_candidate() == public(first, PAT)
        await index.set_protected(public(first, PAT), True)
        assert await index.recycling_candidate() is None

    async def test_concurrent_writes_with_one_failure_in_the_batch(self, index: IndexBackend) -> None:
        """Through the public API: a write for an unknown resource fails alone among many that succeed."""
        records = [record(patient=f"C{i}", study=f"7.{i}", series=f"7.{i}.1", sop=f"7.{i}.1.1") for i in range(40)]
        results = await asyncio.gather(
            *(index.store_instance(r, overwrite=False) for r in records[:20]),
            index.set_metadata(INS, "unknown-instance", 1024, "x", expected_revision=None),
            *(index.store_instance(r, overwrite=False) for r in records[20:]),
            return_exceptions=True,
        )
        assert isinstance(results[20], KeyError)
        assert all(r.status == "Success" for i, r in enumerate(results) if i != 20)  # type: ignore[union-attr]
        assert (await index.statistics()).count_instances == 40
        seqs = [c.seq for c in (await index.get_changes(0, 1000))[0]]
        assert seqs == sorted(set(seqs)) and len(seqs) == 160

    async def test_deletion_forgets_the_changes_of_deleted_resources(self, index: IndexBackend) -> None:
        kept, gone = record(), record(patient="PAT2", study="1.2.2", series="1.2.2.1", sop="1.2.2.1.1")
        await index.store_instance(kept, overwrite=False)
        await index.store_instance(gone, overwrite=False)
        outcome = await index.delete_resource(PAT, public(gone, PAT))
        assert outcome is not None
        changes, done, last = await index.get_changes(0, 100)
        assert done and last == changes[-1].seq
        ids_of_gone = {public(gone, level) for level in ResourceType}
        # Nothing but the deletions refers to the deleted resources any more.
        assert {c.change_type for c in changes if c.public_id in ids_of_gone} == {ChangeType.DELETED}
        assert {c.public_id for c in changes if c.change_type is ChangeType.DELETED} == ids_of_gone
        assert {c.public_id for c in changes if c.change_type is ChangeType.NEW_INSTANCE} == {public(kept, INS)}

    async def test_sequence_survives_clearing_the_log(self, index: IndexBackend) -> None:
        await index.store_instance(record(), overwrite=False)
        _, _, last = await index.get_changes(0, 100)
        assert last == 4
        await index.clear_changes()
        assert await index.get_changes(0, 100) == ([], True, 4)
        outcome = await index.store_instance(record(sop="1.2.1.1.9"), overwrite=False)
        assert outcome.changes[0].seq == 5

    async def test_parent_metadata_comes_from_the_first_instance(self, index: IndexBackend) -> None:
        await index.store_instance(record(), overwrite=False)
        later = record(sop="1.2.1.1.2")
        later.metadata[SER] = {int(MetadataType.REMOTE_AET): "SECOND"}
        await index.store_instance(later, overwrite=False)
        [series] = await index.get_resources(SER, [public(later, SER)])
        assert series.metadata[MetadataType.REMOTE_AET] == "FIRST"
