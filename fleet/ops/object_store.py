"""`fleet s3 up|down|status`: the embedded object store on the first host."""

from __future__ import annotations

from fleet.core.context import Fleet

_MEMORY = "its data lives in memory only: it is lost when the store stops"


def up(fleet: Fleet) -> str:
    from fleet.storage.embedded import ensure_object_store

    if fleet.settings.s3_endpoint:
        return f"using external object storage at {fleet.settings.s3_endpoint}; nothing to start"
    s = fleet.settings
    store = ensure_object_store(fleet.store_host.client, bucket=s.s3_bucket, port=s.s3_port)
    return (
        f"embedded object store running at {store.host_endpoint} (bucket {s.s3_bucket}); {_MEMORY}"
    )


def down(fleet: Fleet) -> str:
    from fleet.storage.embedded import remove_object_store

    if fleet.settings.s3_endpoint:
        return "using external object storage; nothing to stop"
    removed = remove_object_store(fleet.store_host.client)
    if removed is False:
        return "embedded object store was not running"
    return "embedded object store removed"


def status(fleet: Fleet) -> str:
    from fleet.storage.embedded import object_store_status

    s = fleet.settings
    if s.s3_endpoint:
        return f"external object storage at {s.s3_endpoint} (bucket {s.s3_bucket})"
    st = object_store_status(fleet.store_host.client)
    if st is None:
        return "embedded object store: not running (`fleet s3 up` starts it)"
    if not st.running:
        return f"embedded object store: {st.state} (`fleet s3 up` starts it); {_MEMORY}"
    return (
        f"embedded object store: running at {st.host_endpoint} for this host, "
        f"{st.tenant_endpoint} for tenants (bucket {s.s3_bucket}); {_MEMORY}"
    )
