from scent_search.cli import main

main()
