from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway (/v1/, API keys, usage)"

    def ready(self) -> None:
        from gateway.cards import card_usage
        from gateway.services import forward_seen_prune, usage_prune
        from servers.dashboard import card_extra_register
        from servers.housekeeping import pruner_register

        card_extra_register(card_usage)
        # off the request path: the supervisor runs them once a minute
        pruner_register(forward_seen_prune)
        pruner_register(usage_prune)
