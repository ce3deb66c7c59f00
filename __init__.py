"""This checkout, when its folder is named yolo_ray and a script runs in the folder that holds it.

Python would take the checkout for an empty namespace package named yolo_ray, ahead of the installed
package, and `import yolo_ray` would find nothing in it. With this file the checkout is a regular
package whose modules are those of the real package, the yolo_ray/ folder inside it.
"""

from pathlib import Path as _Path

__file__ = str(_Path(__file__).resolve().with_name("yolo_ray") / "__init__.py")
__path__ = [str(_Path(__file__).parent)]
exec(compile(_Path(__file__).read_text(), __file__, "exec"))
