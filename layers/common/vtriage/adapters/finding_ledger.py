"""The contents delivered under each finding id and version, in the cases table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from vtriage.adapters.aws_errors import error_code, transient_aws_errors
from vtriage.adapters.dynamodb import ADD_A_REVISION, REVISION, case_from_item, from_item, to_attribute
from vtriage.bounds import MAX_HISTORY, MAX_VARIANTS
from vtriage.models import HistoryEntry


class DynamoFindingLedger:
    """A `finding#<digest>` item per finding id and version (`Alert.finding_key`) lists the cases its
    contents made, kept as long as cases are (no status: it stays out of the by-status index); a case
    notes another content's case with one conditional UpdateItem on the case, so that nothing else
    written to the case meanwhile is lost and a note is added once. The update adds one to the case's
    revision: a step saving the case it read before keeps the note (`DynamoCaseRepository.save`)."""

    def __init__(
        self, client: Any, table_name: str, retention: timedelta, now: Callable[[], datetime]
    ) -> None:
        """Take a boto3 DynamoDB client, the cases table's name, how long cases are kept, and the clock."""
        self._client = client
        self._table = table_name
        self._retention = retention
        self._now = now

    def join(self, finding_key: str, case_id: str) -> list[str]:
        """Add the case to those of its finding id and version; return the others already there."""
        expires = str(int((self._now() + self._retention).timestamp()))
        with transient_aws_errors():
            try:
                response = self._client.update_item(
                    TableName=self._table,
                    Key={"case_id": {"S": finding_key}},
                    UpdateExpression=(
                        "SET #ids = list_append(if_not_exists(#ids, :empty), :ids), #expires = :expires"
                    ),
                    ConditionExpression=(
                        "attribute_not_exists(#ids) OR (NOT contains(#ids, :id) AND size(#ids) < :max)"
                    ),
                    ExpressionAttributeNames={"#ids": "variant_case_ids", "#expires": "expires_at"},
                    ExpressionAttributeValues={
                        ":empty": {"L": []},
                        ":ids": {"L": [{"S": case_id}]},
                        ":id": {"S": case_id},
                        ":max": {"N": str(MAX_VARIANTS)},
                        ":expires": {"N": expires},
                    },
                    ReturnValues="ALL_OLD",
                )
            except ClientError as error:
                if error_code(error) != "ConditionalCheckFailedException":
                    raise
                # Joined already (a delivery of this case again), or the list is full: the others stand.
                return [other for other in self._case_ids(finding_key) if other != case_id]
        old = from_item(response.get("Attributes", {}))
        return [str(other) for other in old.get("variant_case_ids", []) if other != case_id]

    def note_variant(self, case_id: str, variant_case_id: str, entry: HistoryEntry) -> bool:
        """Add `variant_case_id` to the case's variants and `entry` to its history, atomically; False when
        the case is gone, names this variant already, or names MAX_VARIANTS. A case whose history is
        full gets the variant without the history line."""
        names = {
            "#variants": "variant_case_ids",
            "#history": "history",
            "#updated": "updated_at",
            "#revision": REVISION,
        }
        values = {
            ":zero": {"N": "0"},
            ":one": {"N": "1"},
            ":empty": {"L": []},
            ":ids": {"L": [{"S": variant_case_id}]},
            ":id": {"S": variant_case_id},
            ":max": {"N": str(MAX_VARIANTS)},
            # As the models write it, so that the by-status index sorts every case alike.
            ":now": {"S": str(entry.model_dump(mode="json")["at"])},
        }
        room = (
            "attribute_exists(case_id) AND (attribute_not_exists(#variants)"
            " OR (NOT contains(#variants, :id) AND size(#variants) < :max))"
        )
        with_history: tuple[str, str, dict[str, Any]] = (
            "SET #variants = list_append(if_not_exists(#variants, :empty), :ids),"
            " #history = list_append(if_not_exists(#history, :empty), :entry),"
            f" #updated = :now, {ADD_A_REVISION}",
            room + " AND (attribute_not_exists(#history) OR size(#history) < :max_history)",
            {
                ":entry": {"L": [to_attribute(entry.model_dump(mode="json"))]},
                ":max_history": {"N": str(MAX_HISTORY)},
            },
        )
        without_history: tuple[str, str, dict[str, Any]] = (
            "SET #variants = list_append(if_not_exists(#variants, :empty), :ids),"
            f" #updated = :now, {ADD_A_REVISION}",
            room,
            {},
        )
        for update, condition, extra in (with_history, without_history):
            used = {name: value for name, value in names.items() if name in update or name in condition}
            with transient_aws_errors():
                try:
                    self._client.update_item(
                        TableName=self._table,
                        Key={"case_id": {"S": case_id}},
                        UpdateExpression=update,
                        ConditionExpression=condition,
                        ExpressionAttributeNames=used,
                        ExpressionAttributeValues={**values, **extra},
                    )
                except ClientError as error:
                    if error_code(error) != "ConditionalCheckFailedException":
                        raise
                    if not self._has_room(case_id, variant_case_id):
                        return False
                    continue
            return True
        return False

    def _has_room(self, case_id: str, variant_case_id: str) -> bool:
        """Whether the case exists, does not name the variant yet and can name one more."""
        with transient_aws_errors():
            item = self._client.get_item(
                TableName=self._table, Key={"case_id": {"S": case_id}}, ConsistentRead=True
            ).get("Item")
        if item is None:
            return False
        variants = case_from_item(item).variant_case_ids
        return variant_case_id not in variants and len(variants) < MAX_VARIANTS

    def _case_ids(self, finding_key: str) -> list[str]:
        with transient_aws_errors():
            item = self._client.get_item(
                TableName=self._table, Key={"case_id": {"S": finding_key}}, ConsistentRead=True
            ).get("Item")
        return [str(other) for other in from_item(item or {}).get("variant_case_ids", [])]
