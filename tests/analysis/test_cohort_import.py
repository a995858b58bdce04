"""The import plan: slides grouped from dropped paths, matched to annotations and manifest rows."""

from __future__ import annotations

import pytest

from analysis.cohort_import import FileEntry, ImportPlan, plan_import

F = FileEntry


def reasons(plan: ImportPlan) -> str:
    return " | ".join(f"{e.where}: {e.reason}" for e in plan.errors)


def test_single_files_take_their_annotation_by_name() -> None:
    plan = plan_import([F("c/a.svs", 10), F("c/a.xml", 2), F("c/b.tif", 5), F("c/b_mask.png", 3), F("c/c.ndpi", 4)],
                       cohort="Camelyon", split="train")
    slides = {s.name: s for s in plan.slides}
    assert set(slides) == {"a", "b", "c"}
    assert slides["a"].annotation == "c/a.xml" and not slides["a"].tumor_free
    assert slides["b"].annotation == "c/b_mask.png", "a *_mask.tif/png is an annotation, not a slide"
    assert slides["c"].annotation is None and slides["c"].tumor_free, "no annotation file: tumor-free"
    assert {(c.name, c.split, c.slides) for c in plan.cohorts} == {("Camelyon", "train", 3)}
    assert plan.ok and not plan.unmatched_annotations


def test_geojson_wins_over_xml_and_the_other_is_unmatched() -> None:
    plan = plan_import([F("a.svs", 1), F("a.xml", 1), F("a.geojson", 1)])
    assert plan.slides[0].annotation == "a.geojson"
    assert plan.unmatched_annotations == ("a.xml",)


def test_mrxs_is_its_file_and_its_data_folder() -> None:
    plan = plan_import([F("s/m.mrxs", 1), F("s/m/Slidedat.ini", 2), F("s/m/Index.dat", 3), F("s/m/Data0000.dat", 40),
                        F("s/m.xml", 1)])
    (slide,) = plan.slides
    assert (slide.name, slide.kind, slide.main, slide.size) == ("m", "mrxs", "m.mrxs", 46)
    assert slide.files == ("s/m.mrxs", "s/m/Slidedat.ini", "s/m/Index.dat", "s/m/Data0000.dat")
    assert slide.members == ("m.mrxs", "m/Slidedat.ini", "m/Index.dat", "m/Data0000.dat")
    assert slide.annotation == "s/m.xml"


def test_mrxs_without_its_folder_is_left_out_with_the_reason() -> None:
    plan = plan_import([F("m.mrxs", 1), F("a.svs", 1)])
    assert [s.name for s in plan.slides] == ["a"]
    assert "data folder 'm/' with Slidedat.ini" in plan.left_out[0].reason


def test_a_folder_of_dcm_files_is_one_dicom_slide_named_after_the_folder() -> None:
    plan = plan_import([F("cohort/case7/l0.dcm", 900), F("cohort/case7/thumb.dcm", 10), F("cohort/case7.geojson", 1)])
    (slide,) = plan.slides
    assert (slide.name, slide.kind, slide.main) == ("case7", "dicom", "l0.dcm"), "the biggest file is opened"
    assert slide.members == ("l0.dcm", "thumb.dcm") and slide.annotation == "cohort/case7.geojson"


def test_a_zip_of_one_series_is_a_dicom_slide_and_a_zip_of_two_slides_is_left_out() -> None:
    series = F("x/s9.zip", 50, (F("s9/a.dcm", 20), F("s9/b.dcm", 30)))
    two = F("x/two.zip", 50, (F("a.svs", 20), F("b.svs", 30)))
    unread = F("x/what.zip", 5)
    plan = plan_import([series, two, unread])
    (slide,) = plan.slides
    assert (slide.name, slide.kind, slide.container, slide.files) == ("s9", "dicom", "zip", ("x/s9.zip",))
    assert slide.entries == ("s9/a.dcm", "s9/b.dcm") and slide.members == ("a.dcm", "b.dcm")
    left = {e.where: e.reason for e in plan.left_out}
    assert "holds 2 slides (a, b)" in left["x/two.zip"]
    assert "could not be read" in left["x/what.zip"]


def test_a_manifest_sets_split_domain_tumor_free_mpp_and_names_cohorts() -> None:
    manifest = ("slide,split,domain,annotation,tumor_free,mpp\n"
                "a.svs,validation,in-domain,notes/truth_a.xml,,0.25\n"
                "b,test,shifted,,yes,\n"
                "ghost.svs,test,shifted,,,\n")
    plan = plan_import([F("a.svs", 1), F("b.svs", 1), F("c.svs", 1), F("notes/truth_a.xml", 1), F("m.csv", 1)],
                       manifest, cohort="Cam", manifest_path="m.csv")
    assert plan.ok, reasons(plan)
    slides = {s.name: s for s in plan.slides}
    assert (slides["a"].split, slides["a"].annotation, slides["a"].mpp, slides["a"].tumor_free) == (
        "validation", "notes/truth_a.xml", 0.25, False)
    assert (slides["b"].cohort, slides["b"].tumor_free) == ("Cam test (shifted)", True)
    assert slides["a"].cohort == "Cam validation (in-domain)"
    assert plan.missing_from_manifest == ("c",), "a slide the manifest does not name is not imported"
    assert [e.where for e in plan.rows_without_files] == ["manifest line 4"]
    assert not plan.left_out, "the manifest's own file is not a file to import"


@pytest.mark.parametrize(("manifest", "expected"), [
    ("slide,splt\na.svs,train\n", "unknown column 'splt'"),
    ("name;split\n", "names no slide"),
    ("split,domain\ntrain,x\n", "no 'slide' column"),
    ("slide,split\na.svs,training\n", "unknown split 'training'"),
    ("slide,tumor_free\na.svs,maybe\n", "tumor_free must be true or false"),
    ("slide,mpp\na.svs,0\n", "mpp must be a resolution between 0.05 and 100"),
    ("slide,mpp\na.svs,abc\n", "mpp must be a resolution"),
    ("slide\na.svs\na\n", "named again (first on line 2)"),
    ("slide,annotation\na.svs,missing.xml\n", "'missing.xml' is not among the files"),
    ("slide,annotation\na.svs,a.docx\n", "unsupported kind"),
    ("slide,annotation,tumor_free\na.svs,a.xml,true\n", "marked tumor-free but names the annotation"),
    ("slide\nnotes.txt\n", "files '.txt' are not slides"),
    ("slide,split\na.svs,train,extra\n", "3 values for 2 columns"),
])
def test_a_bad_manifest_is_an_error_that_stops_the_import(manifest: str, expected: str) -> None:
    plan = plan_import([F("a.svs", 1), F("a.xml", 1), F("notes.txt", 1)], manifest)
    assert not plan.ok
    assert expected in reasons(plan)


def test_names_equal_after_nfkc_normalisation_are_an_error() -> None:
    # Full-width letters are plain ones after NFKC; case does not count either.
    plan = plan_import([F("one/\uff53\uff4c\uff49\uff44\uff45\uff11.svs", 1), F("two/SLIDE1.tif", 1)])
    assert not plan.ok
    assert "after Unicode NFKC normalisation" in reasons(plan)


def test_unsafe_paths_and_bad_sizes_are_errors_and_system_files_are_skipped() -> None:
    plan = plan_import([F("../etc/x.svs", 1), F("/abs/y.svs", 1), F("z.svs", -1), F("ok.svs", 1),
                        F("__MACOSX/ok.svs", 1), F(".DS_Store", 1), F("c/Thumbs.db", 1)])
    assert [e.where for e in plan.errors] == ["../etc/x.svs", "/abs/y.svs", "z.svs"]
    assert [s.name for s in plan.slides] == ["ok"] and not plan.left_out


def test_unsupported_files_are_left_out_and_nothing_to_import_is_an_error() -> None:
    plan = plan_import([F("a.jpg", 1), F("b", 1)])
    assert [e.reason for e in plan.left_out] == ["files '.jpg' are neither slides nor annotations",
                                                 "files without an extension are neither slides nor annotations"]
    assert "there is no slide among the files" in reasons(plan)


def test_one_cohort_cannot_hold_two_splits() -> None:
    manifest = "slide,split,cohort\na,train,X\nb,test,X\n"
    plan = plan_import([F("a.svs", 1), F("b.svs", 1)], manifest)
    assert "a cohort is one split of one domain" in reasons(plan)


def test_a_program_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        plan_import([F("a.svs", 1)], split="holdout")
