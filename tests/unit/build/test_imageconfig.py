"""An image not built yet: its env and user told from its Dockerfile and its base's config
(BuildKit's own parser, the `dockerfile` package)."""

from shim.build.imageconfig import for_service, predict

NODE = {"env": [["PATH", "/usr/local/bin:/usr/bin"], ["NODE_VERSION", "20.1"]], "user": "", "arch": "amd64"}


def facts(text, target=None, args=None, bases=None):
    bases = {"node:20": NODE} if bases is None else bases
    asked = []

    def base_config(image):
        asked.append(image)
        return bases.get(image)
    got = predict(text, target=target, build_args=args or {}, platform="linux/amd64", base_config=base_config)
    return got, asked


def test_env_and_user_follow_the_stages_the_target_is_built_from():
    text = ("ARG BASE=node:20\nFROM $BASE AS deps\nENV NPM_CONFIG_CACHE=/home/node/.npm PATH=/app/bin:$PATH\n"
            "FROM deps AS dev\nARG WHO=node\nUSER $WHO\n"
            "FROM busybox AS other\nUSER 1234\n")
    got, asked = facts(text, target="dev")
    assert asked == ["node:20"]  # only the target's own root, not the other stage's
    assert got["user"] == "node" and got["arch"] == "amd64" and got["base"] == "node:20"
    env = dict(got["env"])
    assert env["PATH"] == "/app/bin:/usr/local/bin:/usr/bin" and env["NPM_CONFIG_CACHE"] == "/home/node/.npm"
    assert env["NODE_VERSION"] == "20.1"  # the base's own ENV stays


def test_the_last_stage_is_the_default_target_and_build_args_win():
    text = "FROM node:20\nARG UID=1000\nUSER ${UID}:${UID}\n"
    assert facts(text)[0]["user"] == "1000:1000"
    assert facts(text, args={"UID": "501"})[0]["user"] == "501:501"
    base_user = {"node:20": {**NODE, "user": "node"}}
    assert facts("FROM node:20\nRUN true\n", bases=base_user)[0]["user"] == "node"  # the base's USER stays


def test_what_cannot_be_told_for_sure_gives_nothing():
    assert facts("FROM node:20\n", bases={})[0] is None  # the base is not in the engine
    assert facts("FROM $NOPE\n")[0] is None  # a FROM nobody declared
    assert facts("FROM node:20\nARG WHO\nUSER $WHO\n")[0]["user"] == ""  # declared, no value: empty, as BuildKit
    assert facts("# syntax=example.com/frontend:1\nFROM node:20\n")[0] is None  # an unknown frontend
    assert facts("FROM node:20\n", target="nope")[0] is None


def test_scratch_has_no_env_and_a_compose_service_reads_its_own_dockerfile(tmp_path):
    assert facts("FROM scratch\nENV A=1\n")[0] == {"env": [["A", "1"]], "user": "", "arch": "amd64", "base": "scratch"}
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile.dev").write_text("FROM node:20\nUSER node\n")
    build = {"context": str(tmp_path), "dockerfile": "web/Dockerfile.dev"}
    assert for_service(build, None, {"node:20": NODE}.get)["user"] == "node"
    assert for_service({"context": "rel", "dockerfile": "Dockerfile"}, None, {"node:20": NODE}.get) is None
    inline = {"context": str(tmp_path), "dockerfile_inline": "FROM node:20\nUSER 1000\n"}
    assert for_service(inline, "linux/amd64", {"node:20": NODE}.get)["user"] == "1000"


def test_an_arg_and_an_env_of_one_name_the_later_value_is_the_one_user_sees():
    """Seen on the engine (BuildKit 0.13): `ENV U=1000` then `ARG U=5`, `USER $U` makes an
    image of USER 5; the prediction said 1000, so its cache was owned by a user it does not
    run as. The later assignment wins; an `ARG U` without a value changes nothing."""
    assert facts("FROM node:20\nENV U=1000\nARG U=5\nUSER $U\n")[0]["user"] == "5"
    assert facts("FROM node:20\nARG U=5\nENV U=${U}1\nUSER $U\n")[0]["user"] == "51"
    assert facts("FROM node:20\nENV U=1000\nARG U\nUSER $U\n")[0]["user"] == "1000"
    assert facts("FROM node:20\nENV U=1000\nARG U\nUSER $U\n", args={"U": "7"})[0]["user"] == "7"
    assert facts("FROM node:20 AS base\nARG U=7\nFROM base\nENV U=1000\nUSER $U\n")[0]["user"] == "1000"
    assert facts("FROM node:20 AS base\nARG APPUSER=app\nFROM base AS dev\nUSER $APPUSER\n",
                 target="dev")[0]["user"] == "app"  # a parent stage's ARG reaches its child (as seen)
    assert facts("FROM node:20\nENV U=1\nARG U=5\nENV V=$U\nUSER $V\n")[0]["user"] == "5"
    assert facts("FROM node:20\nENV U=1\nENV U=2 V=$U\nUSER $V\n")[0]["user"] == "1"  # one line: the old value
    got = facts("FROM node:20\nENV U=1000\nARG U=5\n")[0]
    assert dict(got["env"])["U"] == "1000"  # an ARG never reaches the image's env
