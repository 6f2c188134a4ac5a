"""chachaml's HTTP write API (``/api/w``) and read API (``/api``) on arwx (docs/compat.md)."""
