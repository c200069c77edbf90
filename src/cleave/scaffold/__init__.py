"""Writing the system's code and configuration for the developer: a new service of the same
shape as the others (`cleave new service`), a service moved into a unit of its own
(`cleave extract`). Edits to cleave.toml change only the lines they must, keeping its comments."""
