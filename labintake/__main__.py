from labintake.cli import app

app()
