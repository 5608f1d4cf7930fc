"""Wire contract. Generated stubs live in proto/fercomp/v1/ (regenerate: `make proto`)."""
