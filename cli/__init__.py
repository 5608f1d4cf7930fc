"""The `fercomp` command line. Each subcommand module registers itself and imports heavy
dependencies (torch, grpc, fastapi) only when its command runs."""
