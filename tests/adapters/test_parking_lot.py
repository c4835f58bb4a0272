"""Parked records on moto: parking cannot fail on what a record holds, big records keep a head, a size and a
hash (and a whole copy in the archive bucket when there is one), a redrive is marked once."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import boto3
import pytest

from consumers.adapters.dynamodb import INLINE_BYTES, DynamoParkingLot, create_tables
from consumers.core.ports import ParkedRecord

MEGABYTE_RECORD = bytes(range(256)) * (1_000_000 // 256)


def parked(data: bytes, *, seq: str = "1000", reason: str = "not_json: nope", key: str = "pk") -> ParkedRecord:
    return ParkedRecord(consumer="projector", shard_id="shardId-000000000000", sequence_number=seq,
                        partition_key=key, reason_kind="not_json", reason=reason, data=data,
                        parked_at="2026-11-27T09:00:00.000000Z", error_type="MalformedRecord",
                        position="record 1/1 of its batch")


@pytest.fixture
def lot(dynamodb: Any) -> DynamoParkingLot:
    create_tables(dynamodb, {"parked": "parked"})
    return DynamoParkingLot(dynamodb, "parked")


@pytest.fixture
def archived(dynamodb: Any) -> DynamoParkingLot:
    create_tables(dynamodb, {"parked": "parked"})
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="archive")
    return DynamoParkingLot(dynamodb, "parked", s3=s3, archive_bucket="archive")


def test_a_small_record_is_kept_whole(lot: DynamoParkingLot) -> None:
    lot.park([parked(b'{"not": "an event"}')])
    (row,) = lot.list()
    assert lot.raw_data(row) == b'{"not": "an event"}'
    assert (row["size"], row["truncated"], row["error_type"]) == (19, False, "MalformedRecord")


def test_a_record_of_1_mb_keeps_its_head_size_and_hash(lot: DynamoParkingLot) -> None:
    # GIVEN a record as big as Kinesis allows (its base64 copy alone is over DynamoDB's 400 KB an item)
    lot.park([parked(MEGABYTE_RECORD)])
    (row,) = lot.list()
    # THEN the first 64 KB, the size and the SHA-256 are kept, and it says it is cut
    assert base64.b64decode(row["data_b64"]) == MEGABYTE_RECORD[:INLINE_BYTES]
    assert row["size"] == len(MEGABYTE_RECORD) and row["truncated"] is True
    assert row["sha256"] == hashlib.sha256(MEGABYTE_RECORD).hexdigest()
    assert lot.raw_data(row) is None  # no archive: the whole record is not here


def test_with_an_archive_bucket_the_whole_record_is_kept_there(archived: DynamoParkingLot) -> None:
    archived.park([parked(MEGABYTE_RECORD, seq="2000")])
    (row,) = archived.list()
    assert row["archive_uri"] == "s3://archive/parked/projector/shardId-000000000000/2000"
    assert archived.raw_data(row) == MEGABYTE_RECORD


def test_text_that_is_not_valid_utf8_does_not_stop_parking(lot: DynamoParkingLot) -> None:
    # GIVEN a reason quoting a group with a lone surrogate (from JSON's "\ud800")
    lot.park([parked(b"{}", reason="invalid: group 'job:\ud800x' is too long", key="job:\udfff")])
    (row,) = lot.list()
    assert row["reason"] == "invalid: group 'job:\\ud800x' is too long"
    assert row["partition_key"] == "job:\\udfff"


def test_a_redrive_is_claimed_once_and_survives_the_record_being_parked_again(lot: DynamoParkingLot) -> None:
    lot.park([parked(b"garbage")])
    (row,) = lot.list()
    # WHEN it is claimed for a redrive, twice
    assert lot.claim_redrive(row) is True
    assert lot.claim_redrive(row) is False
    lot.redriven_as(row, "4242")
    # AND the same record is parked again (its batch was delivered again)
    lot.park([parked(b"garbage")])
    # THEN the mark is still there
    (again,) = lot.list()
    assert again["redriven_as"] == "4242" and again["redriven_at"]


def test_a_released_redrive_can_be_claimed_again(lot: DynamoParkingLot) -> None:
    lot.park([parked(b"garbage")])
    (row,) = lot.list()
    assert lot.claim_redrive(row)
    lot.release_redrive(row)
    assert lot.claim_redrive(row)


def test_one_shard_is_read_by_query_in_sequence_order(lot: DynamoParkingLot) -> None:
    lot.park([parked(b"a", seq="30"), parked(b"b", seq="4")])
    assert [r["sequence_number"] for r in lot.of_shard("projector", "shardId-000000000000")] == ["4", "30"]
    assert lot.of_shard("recovery", "shardId-000000000000") == []
