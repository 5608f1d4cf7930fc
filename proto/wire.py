"""Names of the wire contract that the .proto cannot carry, defined once for client and server.

gRPC metadata keys and the HTTP header of the request id are part of the API as much as the
messages are: a server and a client that spell them differently fail silently (the client
would just not see the error code). Hand-written, beside the generated ``fercomp.v1`` package.
"""

from proto.fercomp.v1 import fercomp_pb2

#: Trailing metadata of a failed call: the machine-readable error code (docs/SERVING.md).
ERROR_CODE_KEY = "fercomp-error-code"
#: Request id: gRPC trailing metadata (both ways) and the HTTP header of the same name.
REQUEST_ID_KEY = "x-request-id"
#: The full gRPC service name, as health checks and reflection list it.
SERVICE_NAME: str = fercomp_pb2.DESCRIPTOR.services_by_name["FerService"].full_name
