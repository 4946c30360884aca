from imgbalance.cli import main

main()
