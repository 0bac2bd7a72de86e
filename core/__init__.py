"""The bottom floor: what every package may import, and which imports none of them (only
the standard library and third-party packages such as httpx).

- `core.errors`: the one error hierarchy (`GatewayError` and its families).
- `core.configschema`: the strict config-dataclass loader (`load`, `bounded`).
- `core.logs`: the project's loggers (`get_logger`).
- `core.redact`: URLs for messages and logs, secrets masked (`redact_url`).
- `core.httppost`: one JSON POST with bounded retries (`post_json`, `PostError`).

Submodules are imported on demand; importing the package imports none of them.
"""

__all__ = ["configschema", "errors", "httppost", "logs", "redact"]
