"""Small objects next to a remote table (the manifest, the write lease, tuned index settings), with
the conditional writes a lease needs, for each object store: S3 (boto3) and Azure Blob Storage
(azure-storage-blob). Lance itself reaches the table through its own object_store layer.

Every client has the same three calls: ``get`` -> (body, etag) or None, ``put`` with an optional
create-only or match-etag condition -> False when the condition fails, and ``delete`` (if-match).
"""

from __future__ import annotations

import os
from typing import Mapping

from ..errors import StoreError, install_hint

PRECONDITION_CODES = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "ConditionNotMet",
                      "BlobAlreadyExists")
MISSING_CODES = ("NoSuchKey", "404", "NotFound", "BlobNotFound")
# Azurite's fixed, published development account (not a secret: every emulator install has it)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_BLOB_ENDPOINT = "http://127.0.0.1:10000/" + AZURITE_ACCOUNT


def _option(options: Mapping[str, str], *names: str) -> str | None:
    return next((options[n] for n in names if n in options), None)


class S3Objects:
    """Objects in one S3 bucket (``If-None-Match`` / ``If-Match`` need botocore >= 1.35)."""

    def __init__(self, bucket: str, options: Mapping[str, str]):
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise StoreError(f"S3 stores need boto3: {install_hint('s3')}") from exc
        self.bucket = bucket
        self.client = boto3.client(
            "s3", endpoint_url=_option(options, "aws_endpoint", "endpoint_url", "aws_endpoint_url"),
            region_name=_option(options, "aws_region", "region") or os.environ.get("AWS_REGION", "us-east-1"),
            aws_access_key_id=_option(options, "aws_access_key_id", "access_key_id"),
            aws_secret_access_key=_option(options, "aws_secret_access_key", "secret_access_key"),
            aws_session_token=_option(options, "aws_session_token", "session_token"),
            config=Config(retries={"max_attempts": 5, "mode": "standard"}))

    def get(self, key: str) -> tuple[bytes, str] | None:
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _code(exc) in MISSING_CODES:
                return None
            raise
        return r["Body"].read(), r["ETag"]

    def put(self, key: str, data: bytes, *, create_only: bool = False, if_match: str | None = None) -> bool:
        condition = {"IfNoneMatch": "*"} if create_only else ({"IfMatch": if_match} if if_match else {})
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **condition)
        except Exception as exc:
            if condition and _code(exc) in PRECONDITION_CODES:
                return False
            raise
        return True

    def delete(self, key: str, *, if_match: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=if_match)
        except Exception as exc:
            if _code(exc) in PRECONDITION_CODES + MISSING_CODES:
                return
            if type(exc).__name__ == "ParamValidationError":  # botocore without conditional deletes
                self.client.delete_object(Bucket=self.bucket, Key=key)
                return
            raise


class AzureObjects:
    """Blobs in one Azure container (``az://container/prefix``), with the credentials Lance takes:
    ``azure_storage_account_name`` + ``azure_storage_account_key`` (or ``..._sas_key``), an
    ``azure_storage_connection_string``, or ``azure_storage_use_emulator: "true"`` for Azurite."""

    def __init__(self, container: str, options: Mapping[str, str]):
        try:
            from azure.storage.blob import BlobServiceClient
        except ImportError as exc:
            raise StoreError(f"Azure stores need azure-storage-blob: {install_hint('azure')}") from exc
        conn = _option(options, "azure_storage_connection_string", "connection_string")
        account = _option(options, "azure_storage_account_name", "account_name")
        key = _option(options, "azure_storage_account_key", "account_key", "access_key")
        sas = _option(options, "azure_storage_sas_key", "sas_key", "sas_token")
        emulator = str(_option(options, "azure_storage_use_emulator", "use_emulator") or "").lower() == "true"
        endpoint = _option(options, "azure_storage_endpoint", "azure_endpoint", "endpoint")
        if conn:
            service = BlobServiceClient.from_connection_string(conn)
        else:
            if emulator:
                endpoint = endpoint or AZURITE_BLOB_ENDPOINT
                account = account or AZURITE_ACCOUNT
            if not account and not endpoint:
                raise StoreError("Azure stores need azure_storage_account_name (with a key or SAS) or "
                                 "azure_storage_connection_string in storage_options")
            url = endpoint or f"https://{account}.blob.core.windows.net"
            credential = {"account_name": account, "account_key": key} if key else sas
            service = BlobServiceClient(url, credential=credential)
        self.container = service.get_container_client(container)

    def get(self, key: str) -> tuple[bytes, str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            download = self.container.get_blob_client(key).download_blob()
        except ResourceNotFoundError:
            return None
        return download.readall(), download.properties.etag

    def put(self, key: str, data: bytes, *, create_only: bool = False, if_match: str | None = None) -> bool:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        blob = self.container.get_blob_client(key)
        try:
            if create_only:
                blob.upload_blob(data, overwrite=False)  # If-None-Match: *
            elif if_match:
                blob.upload_blob(data, overwrite=True, etag=if_match, match_condition=MatchConditions.IfNotModified)
            else:
                blob.upload_blob(data, overwrite=True)
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True

    def delete(self, key: str, *, if_match: str) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:
            self.container.get_blob_client(key).delete_blob(etag=if_match,
                                                            match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return


def object_client(scheme: str, bucket: str, options: Mapping[str, str]):
    """The client for a store URI's scheme; GCS (``gs://``) has no lease implementation yet."""
    if scheme in ("s3", "s3+ddb"):
        return S3Objects(bucket, options)
    if scheme == "az":
        return AzureObjects(bucket, options)
    raise StoreError(f"{scheme}:// stores are not supported yet: the store's manifest and write lease "
                     "are implemented for s3:// (and S3-compatible servers) and az:// only")


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
