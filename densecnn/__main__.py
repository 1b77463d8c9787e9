from densecnn.cli import main

main()
