from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway (/v1/, API keys, usage)"

    def ready(self) -> None:
        from gateway import receivers  # noqa: F401  (connects them to servers.signals)
