"""``python -m nsn_store``: the same CLI as the ``nsn-store`` command."""

from nsn_store.cli import main

if __name__ == "__main__":
    main(prog_name="nsn-store")
