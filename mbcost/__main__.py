from mbcost.cli import main

__all__ = []

main()
