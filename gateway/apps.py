from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway (/v1/, API keys, usage)"

    def ready(self) -> None:
        from gateway.cards import card_usage
        from servers.dashboard import CARD_EXTRA_PROVIDERS

        if card_usage not in CARD_EXTRA_PROVIDERS:
            CARD_EXTRA_PROVIDERS.append(card_usage)
