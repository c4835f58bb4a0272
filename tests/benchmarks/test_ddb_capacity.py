"""DynamoDB capacity units as DynamoDB bills them, counted from item sizes (moto's ConsumedCapacity is a
constant per operation). Rules: Amazon DynamoDB Developer Guide, "DynamoDB item sizes and formats" and
"DynamoDB read and write operations"; the on-demand pricing page's read and write request units."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from benchmarks.ddb_capacity import (
    Accountant,
    SizeBook,
    item_reader,
    item_size,
    key_schema_reader,
    number_size,
    read_units,
    write_units,
)


def test_sizes_follow_the_developer_guide() -> None:
    # A number: 1 byte per two significant digits, + 1; leading and trailing zeros trimmed
    assert number_size("12345") == 4
    assert number_size("100") == 2
    assert number_size("-0.00120") == 2
    # An item: names and values; a map or list 3 bytes + 1 per element
    assert item_size({"pk": {"S": "abc"}}) == 5
    assert item_size({"m": {"M": {"a": {"BOOL": True}}}}) == 1 + 3 + (1 + 1 + 1)
    assert item_size({"l": {"L": [{"N": "1"}, {"NULL": True}]}}) == 1 + 3 + (1 + 2) + (1 + 1)


def test_units_round_up_to_1_kb_writes_and_4_kb_reads() -> None:
    assert (write_units(0), write_units(1024), write_units(1025)) == (1, 1, 2)
    assert (read_units(4096, consistent=True), read_units(4097, consistent=True)) == (1.0, 2.0)
    assert read_units(100, consistent=False) == 0.5


@pytest.fixture
def counted(dynamodb: Any) -> tuple[Any, Accountant]:
    dynamodb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    session = boto3.session.Session(region_name="us-east-1")
    accountant = Accountant(SizeBook(key_schema_reader(dynamodb)), item_reader(dynamodb))
    accountant.attach(session)
    return session.client("dynamodb"), accountant


def test_writes_cost_the_larger_of_before_and_after_and_transactions_twice(counted: tuple[Any, Accountant]) -> None:
    client, accountant = counted
    # GIVEN a 1.5 KB item put, then updated to about 3 KB, then a small item put in a transaction
    client.put_item(TableName="t", Item={"pk": {"S": "a"}, "v": {"S": "x" * 1500}})
    client.update_item(TableName="t", Key={"pk": {"S": "a"}}, UpdateExpression="SET w = :w",
                       ExpressionAttributeValues={":w": {"S": "y" * 1500}})
    client.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "b"}}}}])
    # WHEN a put fails its condition on the 3 KB item
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.put_item(TableName="t", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)")
    # THEN 2 + 3 + 2 x 1 + 3 (a failed condition costs the existing item's size) write units
    assert accountant.usage.wcu[("t", "PutItem")] == 2 + 3
    assert accountant.usage.wcu[("t", "UpdateItem")] == 3
    assert accountant.usage.wcu[("t", "TransactWriteItems")] == 2
    assert accountant.usage.total_requests == 4


def test_reads_cost_4_kb_blocks_and_a_miss_the_minimum(counted: tuple[Any, Accountant]) -> None:
    client, accountant = counted
    client.put_item(TableName="t", Item={"pk": {"S": "a"}, "v": {"S": "x" * 5000}})
    # WHEN the 5 KB item is read strongly, then eventually, then a batch reads it and a key that is absent
    client.get_item(TableName="t", Key={"pk": {"S": "a"}}, ConsistentRead=True)
    client.get_item(TableName="t", Key={"pk": {"S": "a"}})
    client.batch_get_item(RequestItems={"t": {"Keys": [{"pk": {"S": "a"}}, {"pk": {"S": "zz"}}],
                                              "ConsistentRead": True}})
    # THEN 2 + 1 read units for the gets, 2 + 1 for the batch (the miss costs one)
    assert accountant.usage.rcu[("t", "GetItem")] == 3
    assert accountant.usage.rcu[("t", "BatchGetItem")] == 3
