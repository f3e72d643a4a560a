"""Runs app.py natively (plain python3, no component) on the golden cases in
cases/<case>/ (the format of `traefik-openstack test`: an expected.json with
"error" is a case whose settings must be refused with that text) and on more
bad settings.

    python3 examples/policies/python/test_app.py
    UPDATE_GOLDEN=1 python3 examples/policies/python/test_app.py   # rewrites expected.json; review the diff
"""

import copy
import json
import os
import pathlib
import unittest

from app import SettingsError, route

CASES = pathlib.Path(__file__).resolve().parent / "cases"


def run(case, reverse=False):
    settings = (case / "settings.json").read_text()
    instances = json.loads((case / "instances.json").read_text())
    if reverse:
        instances = copy.deepcopy(instances[::-1])
        for i in instances:
            i.get("addresses", []).reverse()
    out = route(settings, instances)
    doc = dict(out, config=json.loads(out["config"]))
    return out["config"], doc


class Golden(unittest.TestCase):
    def test_cases(self):
        cases = sorted(p for p in CASES.iterdir() if p.is_dir())
        self.assertTrue(cases, f"no cases under {CASES}")
        for case in cases:
            with self.subTest(case=case.name):
                expected = json.loads((case / "expected.json").read_text())
                if "error" in expected:
                    with self.assertRaises(SettingsError) as e:
                        run(case)
                    self.assertIn(expected["error"], str(e.exception))
                    continue
                text, doc = run(case)
                # Traefik hashes the body: Nova's listing order must not matter
                self.assertEqual(text, run(case, reverse=True)[0])
                if os.environ.get("UPDATE_GOLDEN", "0") != "0":
                    expected = doc
                    (case / "expected.json").write_text(
                        json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
                    )
                self.assertEqual(doc, expected)


class BadSettings(unittest.TestCase):
    def test_rejected(self):
        for settings, needle in [
            ("not json", "not JSON"),
            ("[]", "expected a table"),
            ("{}", "domain"),
            ('{"domain": "apps.example.com", "prot": 80}', 'unknown key "prot"'),
            ('{"domain": "Apps.example.com"}', "domain"),
            ('{"domain": "apps.example.com\\n"}', "domain"),
            ('{"domain": "x`) || Host(`y"}', "domain"),
            ('{"domain": "apps.example.com", "port": 0}', "port"),
            ('{"domain": "apps.example.com", "port": "80"}', "port"),
            ('{"domain": "apps.example.com", "port": true}', "port"),
            ('{"domain": "apps.example.com", "entry_points": "web"}', "entry_points"),
            ('{"domain": "apps.example.com", "entry_points": ["web,websecure"]}', "entry_points"),
        ]:
            with self.subTest(settings=settings):
                with self.assertRaises(SettingsError) as e:
                    route(settings, [])
                self.assertIn(needle, str(e.exception))

    def test_defaults(self):
        out = route('{"domain": "apps.example.com"}', [])
        self.assertEqual(out, {"config": "{}", "diagnostics": [], "routes": []})


if __name__ == "__main__":
    unittest.main()
