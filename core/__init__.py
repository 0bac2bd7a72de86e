"""The bottom floor: what every package may import, and which imports none of them.

- `core.errors`: the one error hierarchy (`GatewayError` and its families).
- `core.configschema`: the strict config-dataclass loader (`load`, `bounded`).
"""
