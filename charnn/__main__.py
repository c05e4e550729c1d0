from charnn.cli import main

main()
