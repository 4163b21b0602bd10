"""`mlxm`: MLX Manager from a shell, through /api/v1/ only. Its own package (httpx and the
standard library, nothing of the app): `pip install ./mlxm` installs the `mlxm` command."""
