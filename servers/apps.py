from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"

    def ready(self) -> None:
        # The apps below ask servers about state through one function each (see their selectors).
        from library.selectors import answer_model_uses
        from profiles import selectors as profile_questions
        from servers import selectors

        profile_questions.answer(statuses=selectors.profile_server_statuses, serving=selectors.profile_serving)
        answer_model_uses(selectors.model_uses, folders=selectors.profile_folders)
