import typer
app = typer.Typer()
@app.command()
def serve() -> None:
    print("hello")
@app.command()
def status() -> None:
    print("status")
