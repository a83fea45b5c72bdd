"""Shared by every test folder: this folder is on sys.path (pytest puts a conftest's
folder there), so ``policy_texts`` imports from any of them."""
