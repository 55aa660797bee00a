"""Reading one series off a server's Prometheus metrics page, for the end-to-end tests."""
import urllib.request


def metric_value(server, name: str, **labels) -> float:
    """The value of the series `name{labels}` (all its labels given) on `server`'s metrics port; 0 while absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        page = response.read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith(f"{name}{{{wanted}}}")]
    return values[0] if values else 0.0
