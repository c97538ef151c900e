"""`refs.bib`: checked entries for what the paper cites (the datasets, the tools, the challenge, related work)."""
from __future__ import annotations

from results.paper.fmt import tex_escape
from search.data.labels import LOADERS
from search.data.sources import SEPARATOR

SYNTHETIC = "the built-in synthetic AIGC-like set (procedural scenes with known distortions)"


def dataset_title(dataset: str) -> tuple[str, str | None]:
    """(its name in the text, as LaTeX; its BibTeX key(s) or None) of a study's dataset: a labelled format as its
    `search.data.labels.LabelFormat` names and cites it, joined formats (`agiqa3k+agiqa1k`) together, the synthetic
    set described; any other name (a dataset added later) escaped and not cited."""
    if dataset == "synthetic":
        return SYNTHETIC, None
    names = dataset.split(SEPARATOR)
    if not all(n in LOADERS for n in names):
        return tex_escape(dataset), None
    keys = [LOADERS[n].cite for n in names if LOADERS[n].cite]
    return " + ".join(tex_escape(LOADERS[n].title) for n in names), ",".join(keys) or None

BIB = {
    "li2024agiqa3k": """@article{li2024agiqa3k,
  author  = {Li, Chunyi and Zhang, Zicheng and Wu, Haoning and Sun, Wei and Min, Xiongkuo and Liu, Xiaohong and Zhai,
            Guangtao and Lin, Weisi},
  title   = {{AGIQA-3K}: An Open Database for {AI}-Generated Image Quality Assessment},
  journal = {IEEE Transactions on Circuits and Systems for Video Technology},
  volume  = {34},
  number  = {8},
  pages   = {6833--6846},
  year    = {2024},
  doi     = {10.1109/TCSVT.2023.3319020}
}""",
    "zhang2023agiqa1k": """@inproceedings{zhang2023agiqa1k,
  author    = {Zhang, Zicheng and Li, Chunyi and Sun, Wei and Liu, Xiaohong and Min, Xiongkuo and Zhai, Guangtao},
  title     = {A Perceptual Quality Assessment Exploration for {AIGC} Images},
  booktitle = {IEEE International Conference on Multimedia and Expo Workshops (ICMEW)},
  pages     = {440--445},
  year      = {2023}
}""",
    "li2024aigiqa20k": """@inproceedings{li2024aigiqa20k,
  author    = {Li, Chunyi and Kou, Tengchuan and Gao, Yixuan and Cao, Yuqin and Sun, Wei and Zhang, Zicheng and Zhou,
              Yingjie and Zhang, Zhichao and Zhang, Weixia and Wu, Haoning and others},
  title     = {{AIGIQA-20K}: A Large Database for {AI}-Generated Image Quality Assessment},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR) Workshops},
  pages     = {6327--6336},
  year      = {2024}
}""",
    "akiba2019optuna": """@inproceedings{akiba2019optuna,
  author    = {Akiba, Takuya and Sano, Shotaro and Yanase, Toshihiko and Ohta, Takeru and Koyama, Masanori},
  title     = {Optuna: A Next-generation Hyperparameter Optimization Framework},
  booktitle = {Proceedings of the 25th ACM SIGKDD International Conference on Knowledge Discovery \\& Data Mining},
  pages     = {2623--2631},
  year      = {2019},
  doi       = {10.1145/3292500.3330701}
}""",
    "fang2023depgraph": """@inproceedings{fang2023depgraph,
  author    = {Fang, Gongfan and Ma, Xinyin and Song, Mingli and Mi, Michael Bi and Wang, Xinchao},
  title     = {{DepGraph}: Towards Any Structural Pruning},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {16091--16101},
  year      = {2023}
}""",
    "paszke2019pytorch": """@inproceedings{paszke2019pytorch,
  author    = {Paszke, Adam and Gross, Sam and Massa, Francisco and Lerer, Adam and Bradbury, James and Chanan,
              Gregory and Killeen, Trevor and Lin, Zeming and Gimelshein, Natalia and Antiga, Luca and Desmaison,
              Alban and K{\\"o}pf, Andreas and Yang, Edward and DeVito, Zachary and Raison, Martin and Tejani, Alykhan
              and Chilamkurthy, Sasank and Steiner, Benoit and Fang, Lu and Bai, Junjie and Chintala, Soumith},
  title     = {{PyTorch}: An Imperative Style, High-Performance Deep Learning Library},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume    = {32},
  pages     = {8024--8035},
  year      = {2019}
}""",
    "icme2026challenge": """@misc{icme2026challenge,
  author       = {{\\todo{challenge organisers}}},
  title        = {{ICME} 2026 Grand Challenge on Lightweight Neural Networks for {AIGC} Image Quality Assessment},
  howpublished = {\\url{https://sites.google.com/view/icme26-aigciqa-gc/home}},
  note         = {{IEEE} International Conference on Multimedia and Expo ({ICME}) Grand Challenge},
  year         = {2026}
}""",
    "mittal2013niqe": """@article{mittal2013niqe,
  author  = {Mittal, Anish and Soundararajan, Rajiv and Bovik, Alan C.},
  title   = {Making a ``Completely Blind'' Image Quality Analyzer},
  journal = {IEEE Signal Processing Letters},
  volume  = {20},
  number  = {3},
  pages   = {209--212},
  year    = {2013}
}""",
    "mittal2012brisque": """@article{mittal2012brisque,
  author  = {Mittal, Anish and Moorthy, Anush Krishna and Bovik, Alan Conrad},
  title   = {No-Reference Image Quality Assessment in the Spatial Domain},
  journal = {IEEE Transactions on Image Processing},
  volume  = {21},
  number  = {12},
  pages   = {4695--4708},
  year    = {2012}
}""",
    "kang2014cnniqa": """@inproceedings{kang2014cnniqa,
  author    = {Kang, Le and Ye, Peng and Li, Yi and Doermann, David},
  title     = {Convolutional Neural Networks for No-Reference Image Quality Assessment},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {1733--1740},
  year      = {2014}
}""",
    "wu2022fastvqa": """@inproceedings{wu2022fastvqa,
  author    = {Wu, Haoning and Chen, Chaofeng and Hou, Jingwen and Liao, Liang and Wang, Annan and Sun, Wenxiu and
              Yan, Qiong and Lin, Weisi},
  title     = {{FAST-VQA}: Efficient End-to-End Video Quality Assessment with Fragment Sampling},
  booktitle = {European Conference on Computer Vision (ECCV)},
  pages     = {538--554},
  year      = {2022}
}""",
    "sandler2018mobilenetv2": """@inproceedings{sandler2018mobilenetv2,
  author    = {Sandler, Mark and Howard, Andrew and Zhu, Menglong and Zhmoginov, Andrey and Chen, Liang-Chieh},
  title     = {{MobileNetV2}: Inverted Residuals and Linear Bottlenecks},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {4510--4520},
  year      = {2018}
}""",
    "tan2019efficientnet": """@inproceedings{tan2019efficientnet,
  author    = {Tan, Mingxing and Le, Quoc V.},
  title     = {{EfficientNet}: Rethinking Model Scaling for Convolutional Neural Networks},
  booktitle = {Proceedings of the 36th International Conference on Machine Learning (ICML)},
  series    = {PMLR},
  volume    = {97},
  pages     = {6105--6114},
  year      = {2019}
}""",
    "elsken2019nas": """@article{elsken2019nas,
  author  = {Elsken, Thomas and Metzen, Jan Hendrik and Hutter, Frank},
  title   = {Neural Architecture Search: A Survey},
  journal = {Journal of Machine Learning Research},
  volume  = {20},
  number  = {55},
  pages   = {1--21},
  year    = {2019}
}""",
    "liu2019rethinking": """@inproceedings{liu2019rethinking,
  author    = {Liu, Zhuang and Sun, Mingjie and Zhou, Tinghui and Huang, Gao and Darrell, Trevor},
  title     = {Rethinking the Value of Network Pruning},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2019}
}""",
    "fineqa2026": """@inproceedings{fineqa2026,
  author    = {{\\todo{authors}}},
  title     = {{`Less is More'} for {AIGC} Quality: A No-Reference {IQA} Model from Scratch},
  booktitle = {International Conference on Machine Learning (ICML)},
  note      = {\\url{https://icml.cc/virtual/2026/78350}},
  year      = {2026}
}""",
}


def refs_bib() -> str:
    """The BibTeX entries the paper cites: the datasets, the tools, the challenge and the related work."""
    return "\n\n".join(BIB.values()) + "\n"
