"""A NuGet v2 (OData) feed of the .nupkg files in one folder, just enough for nuget.exe 2.8.

NuGet 2 keeps in its machine cache only packages it downloaded from an HTTP feed (a folder
feed is read in place), so the NuGet proof serves one: `python3 nuget_feed.py DIR PORT`,
on the cold container's own loopback. Standard library only (runs in the test image).
"""
import base64, hashlib, http.server, os, sys, re

ROOT, PORT = sys.argv[1], int(sys.argv[2])
BASE = f"http://127.0.0.1:{PORT}/api/v2/"
NS = ('xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices" '
      'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"')
METADATA = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx"><edmx:DataServices m:DataServiceVersion="2.0" xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
<Schema Namespace="NuGetGallery" xmlns="http://schemas.microsoft.com/ado/2006/04/edm">
<EntityType Name="V2FeedPackage" m:HasStream="true"><Key><PropertyRef Name="Id"/><PropertyRef Name="Version"/></Key>
<Property Name="Id" Type="Edm.String" Nullable="false"/><Property Name="Version" Type="Edm.String" Nullable="false"/>
<Property Name="PackageHash" Type="Edm.String"/><Property Name="PackageHashAlgorithm" Type="Edm.String"/>
<Property Name="PackageSize" Type="Edm.Int64" Nullable="false"/><Property Name="Description" Type="Edm.String"/>
<Property Name="Authors" Type="Edm.String"/><Property Name="Dependencies" Type="Edm.String"/>
<Property Name="IsLatestVersion" Type="Edm.Boolean" Nullable="false"/><Property Name="IsAbsoluteLatestVersion" Type="Edm.Boolean" Nullable="false"/>
<Property Name="Listed" Type="Edm.Boolean" Nullable="false"/><Property Name="Published" Type="Edm.DateTime" Nullable="false"/>
<Property Name="RequireLicenseAcceptance" Type="Edm.Boolean" Nullable="false"/>
</EntityType>
<EntityContainer Name="FeedContext_x0060_1" m:IsDefaultEntityContainer="true">
<EntitySet Name="Packages" EntityType="NuGetGallery.V2FeedPackage"/>
<FunctionImport Name="FindPackagesById" ReturnType="Collection(NuGetGallery.V2FeedPackage)" EntitySet="Packages" m:HttpMethod="GET"><Parameter Name="id" Type="Edm.String" FixedLength="false" Unicode="false"/></FunctionImport>
</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>
"""


def packages():
    for name in sorted(os.listdir(ROOT)):
        m = re.fullmatch(r"(.+?)\.(\d+\.\d+\.\d+)\.nupkg", name)
        if m:
            data = open(os.path.join(ROOT, name), "rb").read()
            yield m.group(1), m.group(2), name, data


def entry(pid, ver, data):
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    return f"""<entry><id>{BASE}Packages(Id='{pid}',Version='{ver}')</id><title type="text">{pid}</title>
<updated>2026-01-01T00:00:00Z</updated><author><name>t</name></author>
<category term="NuGetGallery.V2FeedPackage" scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"/>
<content type="application/zip" src="{BASE}package/{pid}/{ver}"/><m:properties>
<d:Id>{pid}</d:Id><d:Version>{ver}</d:Version><d:PackageHash>{digest}</d:PackageHash>
<d:PackageHashAlgorithm>SHA512</d:PackageHashAlgorithm><d:PackageSize m:type="Edm.Int64">{len(data)}</d:PackageSize>
<d:Description>probe</d:Description><d:Authors>t</d:Authors><d:Dependencies></d:Dependencies>
<d:IsLatestVersion m:type="Edm.Boolean">true</d:IsLatestVersion><d:IsAbsoluteLatestVersion m:type="Edm.Boolean">true</d:IsAbsoluteLatestVersion>
<d:Listed m:type="Edm.Boolean">true</d:Listed><d:Published m:type="Edm.DateTime">2026-01-01T00:00:00</d:Published>
<d:RequireLicenseAcceptance m:type="Edm.Boolean">false</d:RequireLicenseAcceptance></m:properties></entry>"""


class Feed(http.server.BaseHTTPRequestHandler):
    def reply(self, body, ctype="application/atom+xml;type=feed;charset=utf-8"):
        raw = body if isinstance(body, bytes) else body.encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("DataServiceVersion", "2.0;")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):  # quiet: the test reads nuget's output, not ours
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.endswith("$metadata"):
            return self.reply(METADATA, "application/xml;charset=utf-8")
        m = re.search(r"package/([^/]+)/([^/]+)$", path)
        if m:
            for pid, ver, _, data in packages():
                if (pid.lower(), ver) == (m.group(1).lower(), m.group(2)):
                    return self.reply(data, "application/zip")
        if path.rstrip("/") + "/" == BASE.split(str(PORT))[1]:
            return self.reply(f'<?xml version="1.0" encoding="utf-8"?><service xml:base="{BASE}" xmlns="http://www.w3.org/2007/app" xmlns:atom="http://www.w3.org/2005/Atom"><workspace><atom:title>Default</atom:title><collection href="Packages"><atom:title>Packages</atom:title></collection></workspace></service>', "application/xml;charset=utf-8")
        entries = "".join(entry(pid, ver, data) for pid, ver, _, data in packages())
        feed = f'<?xml version="1.0" encoding="utf-8"?><feed xml:base="{BASE}" {NS}><id>{BASE}Packages</id><title type="text">Packages</title><updated>2026-01-01T00:00:00Z</updated>{entries}</feed>'
        if "Packages(Id=" in path:
            return self.reply('<?xml version="1.0" encoding="utf-8"?>' + entry(*[(p, v, d) for p, v, _, d in packages()][0]).replace("<entry>", f'<entry xml:base="{BASE}" {NS}>', 1), "application/atom+xml;type=entry;charset=utf-8")
        return self.reply(feed)

    do_HEAD = do_GET


http.server.HTTPServer(("127.0.0.1", PORT), Feed).serve_forever()
