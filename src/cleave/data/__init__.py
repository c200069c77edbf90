"""Each service's own data: its database, the chassis's tables, migrations, provisioning and the
unit of work."""
