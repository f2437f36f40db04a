"""The shipped rules read the common reasons in the languages large providers answer in."""

from __future__ import annotations

import pytest

from postroom.mta.bounce.classify import Classifier
from postroom.mta.bounce.reasons import Reason


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(())


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("550 Empfänger unbekannt", Reason.USERUNKNOWN),
        ("550 Das Postfach ist voll", Reason.MAILBOXFULL),
        ("550 Utilisateur inconnu", Reason.USERUNKNOWN),
        ("552 La boîte aux lettres est pleine", Reason.MAILBOXFULL),
        ("550 El usuario no existe", Reason.USERUNKNOWN),
        ("552 Buzón lleno", Reason.MAILBOXFULL),
        ("550 Usuário desconhecido", Reason.USERUNKNOWN),
        ("550 Utente sconosciuto", Reason.USERUNKNOWN),
        ("550 Пользователь не найден", Reason.USERUNKNOWN),
        ("552 Почтовый ящик переполнен", Reason.MAILBOXFULL),
        ("550 宛先が見つかりません", Reason.USERUNKNOWN),
        ("550 用户不存在", Reason.USERUNKNOWN),
        ("550 Domaine inexistant", Reason.HOSTUNKNOWN),
        ("550 Compte désactivé", Reason.SUSPEND),
    ],
)
def test_other_languages(classifier: Classifier, text: str, reason: Reason) -> None:
    assert classifier.classify(None, None, text) is reason


def test_status_rules_follow_the_registry(classifier: Classifier) -> None:
    assert classifier.classify(None, "5.2.0", "") is Reason.FILTERED
    assert classifier.classify(None, "5.4.6", "") is Reason.NETWORKERROR
    assert classifier.classify(None, "5.1.5", "") is Reason.UNDEFINED
    assert classifier.classify(550, "5.1.8", "Sender address rejected: Domain not found") is (
        Reason.REJECTED
    )
    assert classifier.classify(550, "5.4.1", "Recipient address rejected: Access denied") is (
        Reason.USERUNKNOWN
    )
