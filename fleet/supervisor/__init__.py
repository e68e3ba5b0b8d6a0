"""What runs inside every tenant container, next to the runtime: standard library only.

This package ships in the tenant image with the rest of litefleet but must import nothing
outside the standard library and itself (a test enforces it): the lease keeper idles for
the container's whole life and its memory is a per-tenant cost.

- ``layout``: names the container and the fleet agree on (paths, variables, object keys,
  the tenant-name rule). ``fleet.core.names`` re-exports them.
- ``s3``: the S3 settings type, a SigV4 signer and a minimal HTTP/1.1 client.
- ``lease``: the one-writer lease protocol on top of it.
- ``keeper``: holds the lease while a child process group runs (``hold -- CMD``).
- ``litestream``: Litestream command lines and their ``-json`` output.
- ``environments``: which variables each process of the container gets.
- ``volume``: before replicating, restore when empty and set a stale database aside.
- ``__main__``: ``python3 -I -m fleet.supervisor start|hold|replicate|serve-app``.
"""
