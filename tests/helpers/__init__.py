"""What tests share besides fixtures: brokers, recipes, scenes, stand-ins. Import as
`tests.helpers.<module>`; nothing imports from conftest."""
