#!/bin/sh
# Tenant container entrypoint: the supervisor (fleet/supervisor/, standard library only) does
# the rest: restore, the lease keeper, Litestream and the runtime. -I: no imports from the
# working directory (/data) or PYTHON* variables.
exec python3 -I -m fleet.supervisor "$@"
