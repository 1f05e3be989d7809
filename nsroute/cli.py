"""Command line: thin click wrappers; each command's work lives in its own module.

Errors reach the user as one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import sys

import click

from .wireguard import keys


class UserError(click.ClickException):
    """An error meant for the user: printed as one line, exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"nsroute: {self.format_message()}", err=True)


def _fail(e: Exception) -> UserError:
    err = UserError(str(e))
    err.exit_code = getattr(e, "exit_code", 1)  # ready.NotReady: 3
    return err


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nsroute", prog_name="nsroute", message="%(prog)s %(version)s")
def main() -> None:
    """Send all of a host's traffic through WireGuard, with no way to leak.

    \b
    Example:
      nsroute up wg0            # everything now goes through the tunnel
      nsroute status
      nsroute exec -- firefox   # on purpose, around the tunnel
      nsroute down
    """


@main.command()
def genkey() -> None:
    """Print a new private key in base64 (as `wg genkey`).

    \b
    Example:  nsroute genkey | tee private.key | nsroute pubkey
    """
    click.echo(keys.to_base64(keys.generate_private()))


@main.command()
def pubkey() -> None:
    """Read a private key on stdin, print its public key (as `wg pubkey`).

    \b
    Example:  nsroute genkey | nsroute pubkey
    """
    try:
        private = keys.from_base64(sys.stdin.read())
    except keys.KeyError_ as e:
        raise _fail(e) from None
    click.echo(keys.to_base64(keys.public_key(private)))


@main.command()
def genpsk() -> None:
    """Print a new preshared key in base64 (as `wg genpsk`).

    \b
    Example:  nsroute genpsk > peer.psk
    """
    click.echo(keys.to_base64(keys.generate_psk()))


@main.command()
@click.argument("ifname")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="`wg setconf` file to apply at start.")
@click.option("--socket-netns", metavar="NS", help="Open the UDP socket inside this named netns.")
@click.option("--foreground", "-f", is_flag=True, help="Stay in the foreground.")
@click.option("--mtu", type=click.IntRange(576, 65535), default=1420, show_default=True, help="TUN MTU.")
@click.option("--pidfile", type=click.Path(dir_okay=False), help="Write the engine's PID here once it serves.")
@click.option("--user", metavar="USER", help="After set-up, serve as USER with no capabilities "
              "(default: $NSROUTE_ENGINE_USER, else stay root).")
def engine(ifname: str, config_file: str | None, socket_netns: str | None, foreground: bool, mtu: int,
           pidfile: str | None, user: str | None) -> None:
    """Run the WireGuard engine: TUN IFNAME here, UDP socket in --socket-netns.

    \b
    Example:
      nsroute engine wg0 --config /etc/wireguard/wg0.setconf --socket-netns physical -f
    """
    from .engine import daemon

    try:
        code = daemon.run_engine(ifname, config_file=config_file, socket_netns=socket_netns,
                                 foreground=foreground, mtu=mtu, pidfile=pidfile, user=user)
    except daemon.EngineError as e:
        raise _fail(e) from None
    sys.exit(code)


@main.command()
@click.argument("config")
@click.option("--physical", default="physical", show_default=True, help="Name of the namespace for the physical interfaces.")
@click.option("--interface", "interfaces", multiple=True, metavar="IF", help="Move only these interfaces (repeatable).")
@click.option("--into", metavar="NETNS", help="Container mode: make the tunnel the only interface of NETNS.")
@click.option("--backend", type=click.Choice(["auto", "userspace", "kernel"]), default="auto", show_default=True)
@click.option("--wait", type=click.FloatRange(min=0), default=20.0, show_default=True, metavar="SECONDS",
              envvar="NSROUTE_UP_WAIT",
              help="Wait this long for the uplinks and the first handshake; if they do not come, say "
              "which and exit 3 with the kill switch in place (0: do not wait; env NSROUTE_UP_WAIT).")
def up(config: str, physical: str, interfaces: tuple[str, ...], into: str | None, backend: str,
       wait: float) -> None:
    """Put every packet of this host (or of NETNS) through the tunnel of CONFIG.

    CONFIG is a wg-quick file: a path, or a name looked up in /etc/nsroute/ then
    /etc/wireguard/. Exit status 0 once traffic passes, 3 when the kill switch is in
    place but the tunnel did not come up within --wait, 1 on any other failure.

    \b
    Examples:
      nsroute up wg0
      nsroute up ./home.conf --interface eth0
      nsroute up wg0 --into /proc/4242/ns/net
      nsroute up wg0 --wait 0   # the kill switch only; `nsroute status` tells the rest
    """
    from .host import commands

    try:
        commands.up(config, physical=physical, interfaces=list(interfaces), into=into, backend=backend,
                    wait=wait)
    except commands.HostError as e:
        raise _fail(e) from None


@main.command()
@click.argument("config", required=False)
@click.option("--physical", default="physical", show_default=True)
@click.option("--into", metavar="NETNS")
def down(config: str | None, physical: str, into: str | None) -> None:
    """Give the host back exactly as it was before `nsroute up`.

    \b
    Examples:
      nsroute down
      nsroute down wg0 --into /proc/4242/ns/net
    """
    from .host import commands

    try:
        commands.down(config, physical=physical, into=into)
    except commands.HostError as e:
        raise _fail(e) from None


@main.command(hidden=True)
@click.option("--physical", default="physical", show_default=True)
@click.option("--watch-tunnel", is_flag=True, help="End when the engine or kernel link does (systemd units).")
def guard(physical: str, watch_tunnel: bool) -> None:
    """The hot-plug guard that `nsroute up` starts: moves new uplinks into PHYSICAL."""
    from .host import commands

    try:
        sys.exit(commands.guard(physical=physical, watch_tunnel=watch_tunnel))
    except commands.HostError as e:
        raise _fail(e) from None


@main.command()
@click.option("--physical", default="physical", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Everything, machine-readable.")
@click.option("--check", is_flag=True,
              help="Print only the problems; exit 1 when there is any (for scripts and monitoring).")
def status(physical: str, as_json: bool, check: bool) -> None:
    """Show the tunnel, the moved interfaces and each peer, problems first.

    A problem is anything that stops traffic (engine gone, no recent handshake, no usable
    uplink) or could let it around the tunnel (a hardware device, or one with a default
    route, next to the tunnel).

    \b
    Examples:  nsroute status --json | jq .problems
               nsroute status --check || notify-send "VPN broken"
    """
    from .host import commands

    try:
        healthy = commands.status(physical=physical, as_json=as_json, check=check)
    except commands.HostError as e:
        raise _fail(e) from None
    if check and not healthy:
        sys.exit(1)


@main.command(name="exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--physical", default="physical", show_default=True, help="The namespace holding the physical interfaces.")
@click.option("--user", metavar="USER", help="Run as USER (default: the user who invoked sudo/pkexec).")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(physical: str, user: str | None, cmd: tuple[str, ...]) -> None:
    """Run CMD outside the tunnel, on the physical network, on purpose.

    \b
    Examples:
      sudo nsroute exec -- firefox http://captive.portal/
      sudo nsroute exec --user alice -- lpr file.pdf
    """
    from . import exec as exec_mod

    try:
        exec_mod.run(list(cmd), physical=physical, user=user)  # on success this process is CMD
    except exec_mod.ExecError as e:
        raise _fail(e) from None


@main.command()
def demo() -> None:
    """Build a throwaway laptop, router and VPN server in namespaces and show nsroute at work.

    Touches nothing of this machine's own network; removes all it made.

    \b
    Example:  sudo nsroute demo
    """
    from .host import demo as demo_mod

    sys.exit(demo_mod.run())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("ifname")
@click.option("-f", "--foreground", is_flag=True, help="Do not daemonize.")
@click.version_option(package_name="nsroute", prog_name="nsroute-wg", message="%(prog)s v%(version)s")
def wg_cmd(ifname: str, foreground: bool) -> None:
    """Drop-in for `wireguard-go IFNAME`: TUN here, UAPI at /var/run/wireguard/IFNAME.sock.

    Stays in the foreground with -f or WG_PROCESS_FOREGROUND=1. LOG_LEVEL: verbose (or
    debug), info (the default), error or silent; when set, a daemon keeps logging to the
    stderr it was started with, as wireguard-go does.

    \b
    Example:
      WG_QUICK_USERSPACE_IMPLEMENTATION=nsroute-wg wg-quick up wg0
    """
    import os

    from .engine import daemon

    foreground = foreground or os.environ.get("WG_PROCESS_FOREGROUND") == "1"
    try:
        code = daemon.run_engine(ifname, foreground=foreground, log_to_stdio=True)
    except daemon.EngineError as e:
        click.echo(f"nsroute-wg: {e}", err=True)
        sys.exit(1)
    sys.exit(code)


def wg_main() -> None:
    wg_cmd()
