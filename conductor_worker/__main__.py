from conductor_worker.cli import main

main()
