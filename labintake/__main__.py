from labintake.cli import app

# Guarded: `labintake serve` spawns its worker process, which imports this module again.
if __name__ == "__main__":
    app()
