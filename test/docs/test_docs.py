#!/usr/bin/env python3
"""Docs checks that need no build: every JSON block parses, and every knd attribute name the
docs mention (tables, CEL) is one the driver really publishes (src/inventory/slices.cc).
YAML blocks and the NetworkConfigs in them are checked by src/config/docs_examples_test.cc."""

import glob
import json
import os
import re
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOMAIN = "knd.k8s.cni.cncf.io"


def documents():
    return [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def blocks(text, lang):
    return re.findall(r"^```" + lang + r"\n(.*?)^```", text, flags=re.S | re.M)


def published_attributes():
    src = open(os.path.join(ROOT, "src", "inventory", "slices.cc")).read()
    names = set(re.findall(r'own_(?:str|int|bool)\("([A-Za-z0-9]+)"', src))
    assert len(names) > 10, "attribute scan of slices.cc rotted"
    # Capacities of shared parents (docs/shared-nics.md) share the domain.
    header = open(os.path.join(ROOT, "src", "inventory", "slices.h")).read()
    caps = set(re.findall(r'k[A-Za-z]+Capacity\[\] = "([A-Za-z0-9]+)"', header))
    assert len(caps) >= 2, "capacity scan of slices.h rotted"
    return names | caps


class DocsTest(unittest.TestCase):

    def test_json_blocks_parse(self):
        n = 0
        for path in documents():
            for b in blocks(open(path).read(), "json"):
                n += 1
                try:
                    json.loads(b)
                except json.JSONDecodeError as e:
                    self.fail(f"{os.path.relpath(path, ROOT)}: bad JSON example: {e}\n{b}")

    def test_attribute_names_exist(self):
        known = published_attributes()
        # The API's attribute types are fields of the device attribute, not names.
        mentioned = {}
        for path in documents():
            text = open(path).read()
            # Attribute names are C identifiers; a key with a "-" is a label (all-containers).
            for m in re.finditer(re.escape(DOMAIN) + r"/([A-Za-z][A-Za-z0-9]*)(?![\w-])", text):
                mentioned.setdefault(m.group(1), path)
            for m in re.finditer(r'\["' + re.escape(DOMAIN) + r'"\]\.([A-Za-z][A-Za-z0-9]*)', text):
                mentioned.setdefault(m.group(1), path)
            # Table rows like "| `knd.k8s.cni.cncf.io/pciVendor`, `pciDevice` |".
            for m in re.finditer(r"`" + re.escape(DOMAIN) + r"/[A-Za-z0-9]+`((?:, `[A-Za-z0-9]+`)+)",
                                 text):
                for extra in re.findall(r"`([A-Za-z0-9]+)`", m.group(1)):
                    mentioned.setdefault(extra, path)
        # Names of the config API, the driver itself (CDI kind), the network-status marker and
        # the NAD key inside a stored conflist share the domain.
        not_attributes = {"v1alpha1", "net", "attachment", "networkAttachment"}
        unknown = {k: os.path.relpath(v, ROOT) for k, v in mentioned.items()
                   if k not in known and k not in not_attributes}
        self.assertEqual(unknown, {}, "docs mention attributes the driver does not publish")
        self.assertIn("pciVendor", mentioned, "attribute extraction rotted")


if __name__ == "__main__":
    unittest.main(verbosity=2)
