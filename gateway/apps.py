from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway (/v1/, API keys, usage)"

    def ready(self) -> None:
        from gateway import receivers  # noqa: F401  (connects them to servers.signals)
        from gateway.cards import card_usage
        from servers.dashboard import card_extra_register

        card_extra_register(card_usage)
