from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"

    def ready(self) -> None:
        from servers import receivers  # noqa: F401  (answers profiles/signals.py and library/signals.py)
