"""The category ids the default policy must use (issue 2), for the tests that check them."""

COLAB_CATEGORIES = frozenset(
    {
        "web_services_file_hosting",
        "torrents_p2p",
        "remote_desktop_ssh",
        "remote_proxies",
        "crypto_mining",
        "dos_attacks",
        "password_cracking",
        "multiple_accounts",
        "deepfakes",
    }
)
