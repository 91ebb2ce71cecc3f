from mbcost.cli import main

main()
